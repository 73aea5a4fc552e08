"""RED-Net (Mao, Shen, Yang, NIPS 2016, arXiv:1603.09056) reproduced in stock Caffe.

The package lives under tools/ and is run as ``bin/python -m rednet <command>``.
"""
__version__ = "0.1.0"
