from .detector import YOLOS
from .pos_embed import resample_pos_embed
from .variants import (
    EVAL_PROTOCOLS,
    VARIANTS,
    Variant,
    create_model,
    eval_sizes,
    get_variant,
    infer_variant_name,
    input_size,
)

__all__ = ["YOLOS", "VARIANTS", "Variant", "create_model", "get_variant", "infer_variant_name", "eval_sizes",
           "EVAL_PROTOCOLS", "resample_pos_embed", "input_size"]
