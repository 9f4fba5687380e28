"""Helper programs run as modules from the repository root (`python -m scripts.plot_loss ...`)."""
