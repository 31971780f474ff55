"""What ``__main__`` wires: the stack's config loaded for the engine (:mod:`.stack_config`), mapped onto the
components' Args (:mod:`.args`), the Kubernetes provider (:mod:`.kubernetes`) and the registry credential check, a
dynamic resource (:mod:`.credential_check`). Nothing outside the program imports these."""
