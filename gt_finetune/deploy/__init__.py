"""Deploy a fine-tuned model into a Gas Town as an agent alias, and roll it back."""
from gt_finetune.deploy.agents import (
    AGENT_CLIS,
    ROLES,
    DeployPlan,
    DeployRecord,
    RollbackResult,
    apply_deploy,
    list_deployments,
    load_deployment,
    plan_deploy,
    previous_deployment,
    rollback,
)
from gt_finetune.deploy.jsonfile import settings_lock

__all__ = ["AGENT_CLIS", "ROLES", "DeployPlan", "DeployRecord", "RollbackResult", "apply_deploy",
           "list_deployments", "load_deployment", "plan_deploy", "previous_deployment", "rollback", "settings_lock"]
