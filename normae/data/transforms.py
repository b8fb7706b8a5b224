"""The image transforms: MAE's pre-training augmentation and the deterministic evaluation resize + crop."""

from torchvision import transforms


def pretrain_transform(img_size, mean, std):
    """The MAE pre-training augmentation."""
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(
                img_size, scale=(0.2, 1.0), interpolation=transforms.InterpolationMode.BICUBIC
            ),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def eval_transform(img_size, mean, std, crop_pct=0.875):
    """Resize to img_size / crop_pct then center crop img_size; crop_pct=1.0 is a plain resize."""
    return transforms.Compose(
        [
            transforms.Resize(int(img_size / crop_pct), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(img_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
