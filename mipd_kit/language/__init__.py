"""Language-model access through one small callable interface (``Sampler(messages) -> Response``, ``base.py``).

Backends: ``embedded`` (offline deterministic stand-in for an LLM generator/judge, ``embedded.py``),
``openai`` (any OpenAI-compatible ``/v1/chat/completions`` endpoint, ``openai_http.py``), ``hf`` (local
transformers chat / vision-language models, ``hf_local.py``), ``captioner`` (the embedded image captioner,
``captioner/``); ``factory.build_sampler(cfg)`` is the one place any of them is built. ``loopback.py`` is a small
OpenAI-compatible server for tests and benchmarks.
"""
