from custsync.cli import main

main(prog_name="custsync")
