from pam_monai.workflows.inference import SavePropagationResultsd, prepare_prompt_batch

__all__ = ["SavePropagationResultsd", "prepare_prompt_batch"]
