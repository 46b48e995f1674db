from grainforge.cli import main

main()
