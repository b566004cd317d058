"""mipd_kit: reproducible MIPD (open-vocabulary grounded situation recognition) and CL-HOI distillation.

Pure imports only: nothing in the package does I/O at import time.
"""

__version__ = "0.1.0"
