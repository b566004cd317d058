"""The app on top of the ``mipd_kit`` library: the ``mipd`` command, run configs, the notebook pipeline and its
stages, run folders and what is published from them.

- :mod:`~mipd_kit.app.cli`: the ``mipd`` command (subcommands dispatched to ``main(argv)`` functions);
- :mod:`~mipd_kit.app.config`: the run config (YAML, ``--set`` overrides, fingerprints);
- :mod:`~mipd_kit.app.registry`: the stage registry, one :class:`~mipd_kit.app.registry.StageSpec` per stage;
- :mod:`~mipd_kit.app.stages`: one module per pipeline stage (typed ``Config``, ``run(cfg, run_dir)``, ``main``);
- :mod:`~mipd_kit.app.pipeline`: ``mipd run`` (papermill, resume), its config checks and fingerprints in
  :mod:`~mipd_kit.app.plan`, its run folder (``status.json``, lock, environment) in :mod:`~mipd_kit.app.runfolder`;
- :mod:`~mipd_kit.app.check`: ``mipd check``, the pre-flight check of a run config;
- :mod:`~mipd_kit.app.analysis`: the run's results tables, figures and ``results.md``;
- :mod:`~mipd_kit.app.report`: ``mipd publish``, a finished run as a committed report.

The library (``mipd_kit.data``, ``teachers``, ``student``, ...) never imports this package and never writes a run
folder (``lint-imports`` keeps the first).
"""
