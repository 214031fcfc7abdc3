"""The generation store: models, datasets, prompts, generations, feedback, usage and API keys in a
SQL database (SQLite by default, any SQLAlchemy URL), with keyword, vector and hybrid search.

>>> from genlab.store import Store
>>> store = Store.open()                       # ./genlab.db, or $GENLAB_DB
>>> model = store.register_model("runs/gpt", "shakespeare")
>>> hits = store.search("to be or not", mode="hybrid")
"""

from genlab.store.records import (
    ApiKey,
    DatasetInfo,
    Document,
    Feedback,
    Generation,
    GenerationFilter,
    ModelInfo,
    Output,
    SearchHit,
    as_json,
)
from genlab.store.store import Store

__all__ = [
    "ApiKey",
    "DatasetInfo",
    "Document",
    "Feedback",
    "Generation",
    "GenerationFilter",
    "ModelInfo",
    "Output",
    "SearchHit",
    "Store",
    "as_json",
]
