from arxctl.cli import main

main()
