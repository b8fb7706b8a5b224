"""normae: reproduce NoR-MAE and compare it with MAE."""
