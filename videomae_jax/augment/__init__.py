"""Fine-tuning augmentation, as in the official VideoMAE V2 fine-tuning loader.

Order: RandAugment on the decoded frames -> random resized crop (one box per clip) -> horizontal flip (not SSv2)
-> [on device, inside the train step] normalize -> random erasing -> mixup / cutmix.

  rand_augment    timm-style video RandAugment (numpy / PIL, host).
  spatial         the random-resized-crop box and `FinetuneTrainTransform` (RandAugment -> crop -> flip, host);
                  videomae_jax.data.pipeline runs it in the grain workers (mode='finetune').
  random_erasing  one erased box per clip on the normalized batch (jax, device).
Nothing is imported here, so the host modules load in grain workers without JAX.
"""
