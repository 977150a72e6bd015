from taskmill.cli import main

main()
