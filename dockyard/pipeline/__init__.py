"""The delivery pipeline as one CI-neutral model (``model``, built from the stack configs by ``derive``) and a renderer
per CI system (``github``, ``gitlab``, ``circleci``, ``jenkins``); ``files`` renders the systems ``dockyard-ci:systems``
names (``settings``), and ``scripts/generate_workflows.py`` writes them."""
