"""Inferences: jobs, their actor and the torch engine (inferences/engine/, the only code importing torch)."""

from django.apps import AppConfig


class InferencesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "inferences"

    def ready(self) -> None:
        from accounts.esd_permissions import register_resource_models

        from . import actors  # noqa: F401  registers the app's actors, which services queue by name (esd.queues)

        register_resource_models("inference", "inferences.inferencejob")

        from esd.signals import recover_waiting_work, worker_checking, worker_draining, worker_starting
        from inferences.engine_options import check_engine_dtype
        from inferences.finisher import drain
        from inferences.services import inference_recover
        from inferences.warmup import warm_up

        recover_waiting_work.connect(inference_recover, dispatch_uid="inferences.recover")
        worker_draining.connect(drain, dispatch_uid="inferences.finisher")
        worker_starting.connect(warm_up, dispatch_uid="inferences.warmup")
        worker_checking.connect(check_engine_dtype, dispatch_uid="inferences.engine_dtype")

        from endpoints.autoscaling import register_backlog_source
        from inferences.selectors import endpoint_backlog

        register_backlog_source(endpoint_backlog)  # /metrics, the admin and KEDA/HPA count the jobs it holds

        from endpoints.metrics import registry
        from inferences.metrics import BatchingCollector

        registry.register(BatchingCollector())  # /metrics is the endpoints app's; batching figures are ours
