# shellcheck shell=bash
# Sourced by scripts/kube-cluster for `kube-cluster selftest`: checks, level by
# level, that the running cluster does what Nimbus's tests will need.
#   1 etcd + kube-apiserver   readyz, discovery, a CRD and a custom object, server-side apply
#   2 + controller-manager     Deployment -> ReplicaSet -> Pods, Service -> EndpointSlice,
#                              garbage collection of dependents
#   3 + scheduler              pods get a nodeName (a fake Node when no kubelet runs)
#   4 + containerd + kubelet   a local image's pod runs and answers on its pod IP;
#                              Deployment 0 -> 1 timed until the pod answers
# Prints one line per check and a closing "N passed, N failed".

ST_NS=nimbus-kube-selftest
ST_PASSED=0
ST_FAILED=0

st_ok() { ST_PASSED=$((ST_PASSED + 1)); printf 'ok   %s\n' "$*"; }
st_fail() { ST_FAILED=$((ST_FAILED + 1)); printf 'FAIL %s\n' "$*"; }

# st_until SECONDS CMD...: CMD succeeds within SECONDS.
st_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}

# st_check NAME CMD...: one check.
st_check() {
	local name=$1
	shift
	if "$@"; then st_ok "$name"; else st_fail "$name"; fi
}

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- level 1
st_readyz() { [ "$(kubectl_ get --raw /readyz)" = ok ]; }
st_resources() { [ "$(kubectl_ api-resources --no-headers | wc -l)" -gt 40 ]; }

st_crd() {
	kubectl_ apply -f - >/dev/null <<'EOF' || return 1
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.selftest.nimbus.dev
spec:
  group: selftest.nimbus.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
EOF
	kubectl_ wait --for=condition=Established crd/widgets.selftest.nimbus.dev --timeout=30s >/dev/null || return 1
	st_until 30 kubectl_ -n "$ST_NS" get widgets || return 1
	kubectl_ -n "$ST_NS" apply -f - >/dev/null <<'EOF' || return 1
apiVersion: selftest.nimbus.dev/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
EOF
	[ "$(kubectl_ -n "$ST_NS" get widget w1 -o jsonpath='{.spec.size}')" = 3 ]
}

st_ssa() {
	kubectl_ -n "$ST_NS" apply --server-side --field-manager=alpha -f - >/dev/null <<'EOF' || return 1
apiVersion: v1
kind: ConfigMap
metadata: {name: ssa}
data: {a: "1"}
EOF
	kubectl_ -n "$ST_NS" apply --server-side --field-manager=beta -f - >/dev/null <<'EOF' || return 1
apiVersion: v1
kind: ConfigMap
metadata: {name: ssa}
data: {b: "2"}
EOF
	# A second manager changing alpha's field is a conflict.
	if kubectl_ -n "$ST_NS" apply --server-side --field-manager=beta -f - >/dev/null 2>&1 <<'EOF'; then return 1; fi
apiVersion: v1
kind: ConfigMap
metadata: {name: ssa}
data: {a: "9", b: "2"}
EOF
	[ "$(kubectl_ -n "$ST_NS" get cm ssa -o jsonpath='{.data.a}{.data.b}')" = 12 ] &&
		kubectl_ -n "$ST_NS" get cm ssa -o jsonpath='{.metadata.managedFields[*].manager}' | grep -q alpha
}

# ---------------------------------------------------------------- level 2
st_deploy_yaml() { # NAME REPLICAS IMAGE
	cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1}
spec:
  replicas: $2
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: $3
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
EOF
}

st_has() { [ -n "$("$@")" ]; }
st_count_is() { local want=$1; shift; [ "$("$@" | wc -w)" = "$want" ]; }

st_deployment_objects() {
	st_deploy_yaml objs 2 "$HELLO_IMAGE" | kubectl_ -n "$ST_NS" apply -f - >/dev/null || return 1
	st_until 30 st_has kubectl_ -n "$ST_NS" get rs -l app=objs -o name || return 1
	st_until 30 st_count_is 2 kubectl_ -n "$ST_NS" get pods -l app=objs -o name
}

st_endpointslice() {
	kubectl_ -n "$ST_NS" apply -f - >/dev/null <<'EOF' || return 1
apiVersion: v1
kind: Service
metadata: {name: objs}
spec:
  selector: {app: objs}
  ports: [{port: 80, targetPort: 8080}]
EOF
	st_until 30 st_has kubectl_ -n "$ST_NS" get endpointslices -l kubernetes.io/service-name=objs -o name
}

st_gc() {
	kubectl_ -n "$ST_NS" delete deployment objs --wait=false >/dev/null || return 1
	st_until 60 st_count_is 0 kubectl_ -n "$ST_NS" get rs -l app=objs -o name || return 1
	st_until 60 st_count_is 0 kubectl_ -n "$ST_NS" get pods -l app=objs -o name || return 1
	# And an explicit ownerReference between two ConfigMaps.
	kubectl_ -n "$ST_NS" create configmap owner >/dev/null || return 1
	local uid
	uid=$(kubectl_ -n "$ST_NS" get cm owner -o jsonpath='{.metadata.uid}')
	kubectl_ -n "$ST_NS" apply -f - >/dev/null <<EOF || return 1
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: $uid}]
EOF
	kubectl_ -n "$ST_NS" delete cm owner >/dev/null || return 1
	st_until 60 st_count_is 0 kubectl_ -n "$ST_NS" get cm dependent -o name --ignore-not-found
}

# ---------------------------------------------------------------- level 3
ST_FAKE_NODE=nimbus-kube-fake-node

st_fake_node() {
	kubectl_ apply -f - >/dev/null <<EOF || return 1
apiVersion: v1
kind: Node
metadata:
  name: $ST_FAKE_NODE
  labels: {kubernetes.io/hostname: $ST_FAKE_NODE, nimbus-selftest: fake}
EOF
	kubectl_ patch node "$ST_FAKE_NODE" --subresource=status --type=merge -p '{"status":{
	  "capacity":{"cpu":"4","memory":"8Gi","pods":"110"},
	  "allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},
	  "conditions":[{"type":"Ready","status":"True","reason":"SelfTest","message":"fake node",
	    "lastHeartbeatTime":"'"$(date -u +%FT%TZ)"'","lastTransitionTime":"'"$(date -u +%FT%TZ)"'"}]}}' >/dev/null
}

st_scheduled() {
	st_deploy_yaml sched 2 "$HELLO_IMAGE" | kubectl_ -n "$ST_NS" apply -f - >/dev/null || return 1
	st_until 60 st_count_is 2 kubectl_ -n "$ST_NS" get pods -l app=sched \
		-o jsonpath='{range .items[?(@.spec.nodeName)]}{.spec.nodeName}{" "}{end}' || return 1
	printf '     nodeNames: %s\n' "$(kubectl_ -n "$ST_NS" get pods -l app=sched -o jsonpath='{.items[*].spec.nodeName}')"
	kubectl_ -n "$ST_NS" delete deployment sched --wait=false >/dev/null
}

# ---------------------------------------------------------------- level 4
st_pod_ip() { kubectl_ -n "$ST_NS" get pods -l app=hello --field-selector=status.phase=Running -o jsonpath='{.items[0].status.podIP}'; }
st_answers() { local ip; ip=$(st_pod_ip) && [ -n "$ip" ] && curl -fsS --max-time 1 "http://$ip:8080/" | grep -q '^hello from'; }

st_hello_running() {
	st_deploy_yaml hello 1 "$HELLO_IMAGE" | kubectl_ -n "$ST_NS" apply -f - >/dev/null || return 1
	kubectl_ -n "$ST_NS" rollout status deployment/hello --timeout=120s >/dev/null || return 1
	st_until 30 st_answers || return 1
	printf '     pod %s answers: %s\n' "$(st_pod_ip)" "$(curl -fsS --max-time 1 "http://$(st_pod_ip):8080/")"
}

st_slice_addresses() { kubectl_ -n "$ST_NS" get endpointslices -l kubernetes.io/service-name=hello -o jsonpath='{.items[*].endpoints[*].addresses[0]}'; }
st_slice_is() { [ -n "$1" ] && [ "$(st_slice_addresses)" = "$1" ]; }

st_endpoints_have_pod() {
	kubectl_ -n "$ST_NS" expose deployment hello --port 80 --target-port 8080 >/dev/null || return 1
	st_until 30 st_slice_is "$(st_pod_ip)"
}

st_scale_0_1() {
	kubectl_ -n "$ST_NS" scale deployment hello --replicas 0 >/dev/null || return 1
	st_until 60 st_count_is 0 kubectl_ -n "$ST_NS" get pods -l app=hello -o name || return 1
	local t0 t1
	t0=$(now_ms)
	kubectl_ -n "$ST_NS" scale deployment hello --replicas 1 >/dev/null || return 1
	st_until 60 st_answers || return 1
	t1=$(now_ms)
	printf '     scale 0->1 until the pod answered: %d ms\n' $((t1 - t0))
}

selftest() {
	local start=$SECONDS
	apiserver_ready >/dev/null 2>&1 || die "the cluster is not up (kube-cluster up)"
	kubectl_ delete namespace "$ST_NS" --ignore-not-found --wait=true >/dev/null
	kubectl_ delete node "$ST_FAKE_NODE" --ignore-not-found >/dev/null
	kubectl_ create namespace "$ST_NS" >/dev/null
	st_until 30 kubectl_ -n "$ST_NS" get serviceaccount default || true
	if alive kubelet; then cmd_load_image "$IMAGES/kube-hello.tar" >/dev/null; fi
	echo "level 1: etcd + kube-apiserver"
	st_check "readyz" st_readyz
	st_check "api-resources" st_resources
	st_check "CRD and a custom object" st_crd
	st_check "server-side apply (merge + conflict)" st_ssa
	echo "level 2: + kube-controller-manager"
	st_check "Deployment -> ReplicaSet -> 2 Pods" st_deployment_objects
	st_check "Service -> EndpointSlice" st_endpointslice
	st_check "garbage collection of dependents" st_gc
	echo "level 3: + kube-scheduler"
	if ! alive kubelet; then st_check "fake Node registered" st_fake_node; fi
	st_check "pods get a nodeName" st_scheduled
	if alive kubelet; then
		echo "level 4: + containerd + kubelet + CNI"
		st_check "node Ready" node_ready
		st_check "local image's pod Running and answering on its pod IP" st_hello_running
		st_check "EndpointSlice lists the running pod" st_endpoints_have_pod
		st_check "Deployment 0 -> 1" st_scale_0_1
	fi
	kubectl_ delete namespace "$ST_NS" --wait=false >/dev/null 2>&1 || true
	kubectl_ delete crd widgets.selftest.nimbus.dev --wait=false >/dev/null 2>&1 || true
	kubectl_ delete node "$ST_FAKE_NODE" --ignore-not-found >/dev/null 2>&1 || true
	echo "selftest took $((SECONDS - start))s"
	echo "$ST_PASSED passed, $ST_FAILED failed"
	[ "$ST_FAILED" = 0 ]
}
