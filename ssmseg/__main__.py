"""``python -m ssmseg`` (and ``torchrun -m ssmseg``) runs the command line."""

from ssmseg.cli.app import main

if __name__ == "__main__":
    main()
