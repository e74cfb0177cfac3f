"""The demo: accounts, a reader study and a pipeline of real jobs on real images.

`loader` starts it and moves it on; one module per part of the pipeline (`gan`, `evaluation`,
`digits`, `workspace`) and its inputs (`content`, `datasets`, `state`, `marker`). The web tier
never imports this package at start-up: the CLI's `demo` command and the jobs' success hook
import `app.demo.loader` when they need it.
"""
