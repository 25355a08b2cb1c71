"""Supernet training: config and recipes, optimizer and schedule, the steps of each family, the
loop (train), BN calibration and evaluation of a child, fine-tuning, torchrun, and `nas-train`."""
