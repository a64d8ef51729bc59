from trainpipe_bench.stage_bench import main

raise SystemExit(main())
