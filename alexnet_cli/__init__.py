"""The ``alexnet`` command line (``alexnet_cli.main:main``): the one package that imports both
``training`` and ``service``. ``main.py`` builds the parser and dispatches; one module per group of
sub-commands defines their arguments and runs them."""
