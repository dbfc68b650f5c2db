from manifold_lab.cli import main

raise SystemExit(main())
