"""The ``edgesync`` sub-commands: one argparse front-end per module, each ``add_arguments(parser)`` + ``run(args)``.

Front-ends only parse, call the library and print; the work lives in the layers below (top layer: may import any).
"""
