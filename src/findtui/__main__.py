from findtui.cli import main

raise SystemExit(main())
