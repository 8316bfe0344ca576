from findtui.demo.scp import main

raise SystemExit(main())
