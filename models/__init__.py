"""The shipped ppl_bmc models, one scenario a file (installed as ``ppl_bmc.models``).

Each file is a runnable script and a model for ``ppl-bmc`` (see :mod:`ppl_bmc.cli`): ``ppl-bmc
models`` lists them, ``ppl-bmc fit paper_toy ...`` finds them by name.
"""
