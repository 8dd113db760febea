from mlmyths.cli import main

raise SystemExit(main())
