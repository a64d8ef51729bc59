"""How large each string, list and map of a pipeline spec may grow.

Every one is bounded so that the API server refuses a spec too large to run, naming the field, rather
than accepting it and failing later: a TrainingPipeline is stored whole (etcd keeps at most about
1.5 MiB per object), each Job and pod carries part of it, and the CRD's CEL rules are only admitted
with bounded inputs. At every bound at once a spec is under 1 MiB; the largest pipeline they allow
(5,000 symbols, 2,000 candidate features) is tested to run (`tests/unit/test_spec_size.py`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

PATH = 1024  # a file or folder path in a container
NAME = 253  # a Kubernetes object name (DNS subdomain): ServiceAccount, PriorityClass, StorageClass
IMAGE = 512  # registry/repository:tag@sha256:digest
QUANTITY = 64  # "500m", "4Gi", "1.5e3"
COLUMN = 128  # a column of the data: a target or a feature
TARGETS = 500  # targets named in targets.include or targets.horizonBars
FEATURES = 2000  # features named in features.include or features.exclude
SYMBOLS = 5000  # symbols named in data.symbols (each at most 32 characters: contract.pipeline.Symbol)
FAMILIES = 64  # model families named in training.families or stages.<s>.families
RESOURCES = 16  # resource names in one requests/limits map
LABEL_KEY = 317  # prefix (253) + "/" + name (63)
LABEL_VALUE = 63
ANNOTATION_VALUE = 4096
ENTRIES = 64  # node selector, labels, annotations, tolerations of one stage
CRON = 128
TIME_ZONE = 64

Path = Annotated[str, Field(max_length=PATH)]
Name = Annotated[str, Field(max_length=NAME)]
Column = Annotated[str, Field(min_length=1, max_length=COLUMN)]
LabelKey = Annotated[str, Field(max_length=LABEL_KEY)]
LabelValue = Annotated[str, Field(max_length=LABEL_VALUE)]
AnnotationValue = Annotated[str, Field(max_length=ANNOTATION_VALUE)]
