from aftertune.cli import main

main()
