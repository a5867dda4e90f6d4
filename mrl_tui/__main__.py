from mrl_tui.cli import main

raise SystemExit(main())
