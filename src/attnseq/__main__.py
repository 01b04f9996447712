from attnseq.cli import main

raise SystemExit(main())
