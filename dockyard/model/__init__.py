"""Dockyard's model floor: a stack's config, its strategies, its credential rule and its resolved view. Pure or
reading only the stack file; every audience above (the program, the releases, the pipeline, verify) stands on it."""
