"""Model families: the catalogue (`catalogue`), the trainer interface (`base`), the registry (`registry`) and one module per framework group.

Importing this package loads no model library; see `trainpipe.families.registry`.
"""
