#include "api/api_metrics.h"

#include "vmm/routes.h"

void api_metrics_count(struct metrics *m, const char *method, const char *path, int status)
{
	const struct api_route *r = api_route_find(api_method_parse(method), path, NULL);
	if (!r || r->count == ROUTE_NO_METRIC)
		return;
	metric_inc((struct metric_inc *)((char *)m + r->count));
	if (status >= 400 && r->fails != ROUTE_NO_METRIC)
		metric_inc((struct metric_inc *)((char *)m + r->fails));
}
