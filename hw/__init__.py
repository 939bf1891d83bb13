"""Hardware layer: the NTAG 424 DNA protocol, the simulated card, the nfcpy reader, the printer.

Never imports `terminal`.
"""
