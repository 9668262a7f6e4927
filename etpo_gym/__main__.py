from etpo_gym.cli import main

raise SystemExit(main())
