from .cli import main

# Guarded: the server's spawned analysis workers import the parent's __main__ module.
if __name__ == "__main__":
    raise SystemExit(main())
