"""``python -m skr`` runs the command line."""

from skr.entrypoints.cli.app import main

# guarded: a worker process (pages are extracted in one) loads the parent's main module
# under another name, and must not run the command line again
if __name__ == "__main__":
    main()
