from proxy.server.cli import main

raise SystemExit(main())
