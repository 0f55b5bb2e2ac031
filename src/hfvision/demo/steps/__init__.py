"""Demo steps, one module per capability (see :mod:`hfvision.demo`)."""
