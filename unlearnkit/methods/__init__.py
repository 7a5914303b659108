"""Every module in this folder is imported here, so its @METHODS.register decorator runs."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
