__version__ = "0.1.0"

def load_ipython_extension(ipython):
    "`%load_ext aiplatform`: register the platform's magics (see `aiplatform.platform.magics`)."
    from .platform.magics import load_ipython_extension
    load_ipython_extension(ipython)
