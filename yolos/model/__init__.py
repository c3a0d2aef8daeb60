from .detector import YOLOS
from .pos_embed import resample_pos_embed
from .variants import VARIANTS, Variant, create_model, get_variant, infer_variant_name

__all__ = ["YOLOS", "VARIANTS", "Variant", "create_model", "get_variant", "infer_variant_name",
           "resample_pos_embed"]
