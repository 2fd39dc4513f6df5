from hubaudit.cli.main import main

main()
