from aetheris.cli import main

main(prog_name="aetheris")
