"""The names a config may choose from, as data: validating a config imports none of the code behind them.

The tables behind these names (`optimize.OPTIMIZERS`, `cutouts.AUGMENTS`, `cutouts.CUTOUT_METHODS`, `inits.INITS`,
`schedules.SCHEDULES`, `losses.LOSSES`) must carry exactly them
(tests/test_config.py checks); a new variant is a new table entry plus its name here.
"""

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's modes (speed.compile_mode)
OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "adagrad", "adamax", "nadam", "radam", "rmsprop")  # optim.name
AUGMENT_NAMES = ("flip", "affine", "noise", "color", "gray", "perspective", "erasing", "jitter")  # cutouts.augments
CUTOUT_METHOD_NAMES = ("crops", "overview", "pooled")  # cutouts.method
INIT_NAMES = ("tokens", "pixels", "perlin", "gradient", "grey")  # init
SCHEDULE_NAMES = ("constant", "linear", "cosine", "drop75", "warmup-cosine")  # optim.schedule, init_schedule
LOSS_NAMES = ("tv", "saturation")  # the keys of losses
