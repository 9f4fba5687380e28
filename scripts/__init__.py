"""Helper programs run as modules from the repository root (`python -m scripts.plot_loss ...`).

`plot_loss.py` reads dllogger JSON logs (ours or NVIDIA's) and draws their loss curves;
`summarize_runs.py` tables their summary records with the same reader. Both parse their flags
with `cli.py`. The launchers, presets, install, quick start and GPU check beside them are bash
scripts; the README's scripts table lists every one.
"""
