"""The names a config may choose from, as data: validating a config imports none of the code behind them.

The tables behind these names (`optimize.OPTIMIZERS`, `cutouts.AUGMENTS`) must carry exactly them
(tests/test_config.py checks); a new variant is a new table entry plus its name here.
"""

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's modes (speed.compile_mode)
OPTIMIZER_NAMES = ("adam", "adamw", "sgd")  # optim.name
AUGMENT_NAMES = ("flip", "affine", "noise", "color", "gray")  # cutouts.augments
