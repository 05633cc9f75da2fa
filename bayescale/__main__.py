"""``python -m bayescale``: the same command line as the ``bayescale`` script."""

from bayescale.cli import run

if __name__ == "__main__":
    run()
