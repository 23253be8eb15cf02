"""`python -m fastdns` is the `fastdns` command."""

from fastdns.cli.main import main

raise SystemExit(main())
