/*
 * MaLV-OS MLaaS module ABI (plain C11).
 *
 * An MLaaS module is a shared object that the host loads at run time to make
 * decisions for one of its subsystems (which GPU work item runs next, which
 * buffer to evict, how deep to prefetch, how the CPUs are shared among VMs). A module
 * exports exactly one symbol:
 *
 *     const malv_mlaas_module* malv_mlaas_module_get(void);
 *
 * which returns a descriptor that lives as long as the module is loaded: the
 * ABI version the module was built against, the module's name and version,
 * and an array of policies. Each policy belongs to one class and has four
 * entry points:
 *
 *     create(services, vm_name, &state)   one instance per VM that selects it
 *     decide(state, observations, n, decisions)   one decision per observation
 *     feedback(state, outcomes, n)        what happened after a decision (optional)
 *     destroy(state)
 *
 * The observation, decision and outcome types depend on the class (see the
 * per-class sections below); `decide` and `feedback` take them as void
 * pointers to arrays of the class's structs.
 *
 * Minimal module (see examples/mlaas-module/ for a complete one):
 *
 *     static int my_create(const malv_host_services* s, const char* vm, void** st) {
 *       (void)s; (void)vm; *st = NULL; return MALV_MLAAS_OK;
 *     }
 *     static void my_destroy(void* st) { (void)st; }
 *     static int my_decide(void* st, const void* obs, size_t n, void* out) {
 *       const malv_gpu_sched_observation* o = obs;
 *       malv_gpu_sched_decision* d = out;
 *       for (size_t i = 0; i < n; ++i) d[i].score = (double)o[i].enqueue_time_ns;
 *       (void)st; return MALV_MLAAS_OK;
 *     }
 *     static const malv_policy kPolicies[] = {
 *       {MALV_POLICY_GPU_SCHED, "my-fifo", "FIFO", my_create, my_destroy, my_decide, NULL,
 *        NULL},
 *     };
 *     static const malv_mlaas_module kModule = {
 *       MALV_MLAAS_ABI_VERSION, 1, "my_module", "1.0.0", kPolicies,
 *     };
 *     MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) {
 *       return &kModule;
 *     }
 *
 * Trust: modules run inside the host process like kernel modules. The host
 * guards against errors, lateness and bad outputs (the baseline policy decides
 * instead), not against crashes or memory corruption. docs/mlaas-abi.md has
 * the full contract.
 *
 * A gpu_sched policy may also name, per queued item, a model and its input
 * row (enqueue_inputs, ABI 6): the host then runs that model as the item is
 * queued, batched with every other item of every VM for the same model, off
 * the scheduler's lock, and decide() reads the answer in
 * observation.model_output instead of running inference itself.
 *
 * Versioning: MALV_MLAAS_ABI_VERSION changes whenever any struct layout or
 * function signature here changes; the host refuses modules built against
 * another version. `abi_version` is the first field of the module descriptor
 * and stays there in every future version, so it can always be read.
 */
#ifndef MALV_MLAAS_H_
#define MALV_MLAAS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MALV_MLAAS_ABI_VERSION 6u

/* Name of the one symbol a module exports. */
#define MALV_MLAAS_ENTRY_POINT "malv_mlaas_module_get"

#if defined(__GNUC__) || defined(__clang__)
#define MALV_MLAAS_EXPORT __attribute__((visibility("default")))
#else
#define MALV_MLAAS_EXPORT
#endif

/* ---------------------------------------------------------------- status -- */

/* Return values of decide/create and of host services. Any non-zero value
 * from decide makes the host use the class baseline for that call. */
#define MALV_MLAAS_OK 0
#define MALV_MLAAS_ERR_INVALID (-1)   /* bad argument */
#define MALV_MLAAS_ERR_NO_MEMORY (-2) /* allocation failed */
#define MALV_MLAAS_ERR_NOT_FOUND (-3) /* unknown schema, model or file */
#define MALV_MLAAS_ERR_INTERNAL (-4)  /* anything else */
/* Since ABI version 5 (model_open, model_train, model_save): */
#define MALV_MLAAS_ERR_NO_STATE (-5) /* the host keeps no state directory */
#define MALV_MLAAS_ERR_IO (-6)       /* reading or writing a file failed */
#define MALV_MLAAS_ERR_DIVERGED (-7) /* training made a weight non-finite (undone) */

/* Scores must be finite and within [-MALV_MLAAS_SCORE_LIMIT,
 * MALV_MLAAS_SCORE_LIMIT]; anything else is an invalid decision. */
#define MALV_MLAAS_SCORE_LIMIT 1e18

/* --------------------------------------------------------------- classes -- */

typedef enum malv_policy_class {
  MALV_POLICY_GPU_SCHED = 1, /* order of pending GPU work items across VMs */
  MALV_POLICY_MEMORY = 2,    /* which device buffers to evict (spill) first */
  MALV_POLICY_CPU_SCHED = 3, /* CPU shares of VMs, moves of host threads */
  MALV_POLICY_PREFETCH = 4   /* how many items to stage ahead of a consumer */
} malv_policy_class;

#define MALV_POLICY_CLASS_MIN 1u
#define MALV_POLICY_CLASS_MAX 4u

/* ------------------------------------------------------------- gpu_sched -- */

typedef enum malv_priority_class {
  MALV_PRIORITY_LATENCY = 0, /* interactive / inference: run soon */
  MALV_PRIORITY_BATCH = 1    /* training / throughput: may wait */
} malv_priority_class;

/* One pending work item (a queued command at the head of a stream). */
typedef struct malv_gpu_sched_observation {
  uint64_t vm_id;          /* host-assigned VM id */
  uint64_t queue_id;       /* the VM's stream / queue the item is on */
  uint32_t kernel_id;      /* registry kernel id (0: not a kernel launch) */
  uint32_t priority_class; /* malv_priority_class */
  double vm_weight;        /* the VM's share weight, > 0 */
  double est_flops;        /* estimated floating-point operations */
  double est_bytes;        /* estimated bytes read + written */
  int64_t enqueue_time_ns; /* monotonic time the item was queued */
  int64_t waited_ns;       /* now - enqueue_time_ns */
  int64_t vm_busy_ns;      /* accelerator time this VM has used so far */
  int64_t queue_busy_ns;   /* accelerator time this stream has used so far (ABI 5) */
  /* ABI 6: the first output of the model the policy named for this item in
   * enqueue_inputs (see malv_policy), computed when the item was queued.
   * model_output_ready is 1 when model_output holds that answer; 0 (and
   * model_output 0) when the policy has no enqueue_inputs, or the answer was
   * not ready (or failed) by the time of the decision. */
  float model_output;
  uint32_t model_output_ready;
} malv_gpu_sched_observation;

/* The scheduler is two-level (ABI 5). The host level, chosen by the admin
 * per device (fifo, fair-share, or priority: latency class first, then
 * weighted fair share of measured busy time), decides which VM is served
 * next; a VM's gpu_sched policy only orders that VM's own pending items
 * (the heads of its streams). Lower scores run first within the VM (ties:
 * the lower index; items are listed in arrival order). A score is a rank,
 * never compared with another VM's: no policy a VM selects can take device
 * time from another VM. Scores must be finite, >= 0 and at most
 * MALV_MLAAS_SCORE_LIMIT; anything else is a failed decision (the host
 * falls back to the baseline, fifo, for that decision). Urgency is the
 * host level's business (priority runs a latency-class VM's work on the
 * device's highest priority): before ABI 5 a negative score meant urgent. */
typedef struct malv_gpu_sched_decision {
  double score;
} malv_gpu_sched_decision;

/* Reported after an item ran: its observation at decision time and its
 * measured run time. */
typedef struct malv_gpu_sched_outcome {
  malv_gpu_sched_observation item;
  int64_t run_ns;
} malv_gpu_sched_outcome;

/* ---------------------------------------------------------------- memory -- */

/* next_use_ops of a candidate that no op queued on the VM's streams uses. */
#define MALV_MEMORY_NOT_QUEUED UINT64_MAX
/* Reuse gaps a memory observation carries (ABI version 3). */
#define MALV_MEMORY_GAP_HISTORY 8

/* One eviction candidate (a resident device buffer). The host sees the work
 * queued on the VM's streams but not yet run, so it tells the policy how far
 * away the candidate's next use is in that visible queue (Belady's optimal
 * eviction needs exactly that future). A candidate that no queued op uses
 * may still be used later: the guest simply has not queued that work yet. */
typedef struct malv_memory_observation {
  uint64_t vm_id;
  uint64_t buffer_id;
  uint64_t bytes;
  int64_t last_use_ns;   /* monotonic time of the last access */
  int64_t age_ns;        /* now - last_use_ns */
  uint64_t access_count; /* accesses since the buffer was created */
  /* Since ABI version 2: */
  uint64_t next_use_ops; /* queued ops before its next use (0: the very next op);
                            MALV_MEMORY_NOT_QUEUED when no queued op uses it */
  int64_t next_use_ns;   /* the host's estimate of the time until that use; -1: not queued */
  uint32_t dirty;        /* 1: the device copy differs from the host copy (evicting it
                            costs a copy-out); 0: it can be dropped without a copy */
  uint32_t reserved;     /* 0 */
  /* Since ABI version 3: the buffer's history, counted in the VM's ops (every
   * op the host placed for the VM that touches a managed buffer counts one,
   * in dispatch order: the op index of `malv memory replay`'s traces). What
   * a policy needs to predict the next use when nothing is queued (a guest
   * that waits for each op shows no future). */
  uint64_t ops_since_use; /* op index being placed minus that of the buffer's last use
                             (1: the op just before); since its allocation if never used */
  uint64_t reuse_gaps[MALV_MEMORY_GAP_HISTORY]; /* ops between its consecutive uses, latest
                                                   first; 0 past gap_count */
  uint32_t gap_count;                           /* known leading entries of reuse_gaps */
  uint32_t reserved2;                           /* 0 */
} malv_memory_observation;

/* Higher scores are evicted first. */
typedef struct malv_memory_decision {
  double evict_score;
} malv_memory_decision;

typedef struct malv_memory_outcome {
  malv_memory_observation buffer; /* the buffer that was evicted */
  int64_t refault_after_ns;       /* time until it was needed again; -1: not yet */
} malv_memory_outcome;

/* -------------------------------------------------------------- prefetch -- */

/* One prefetching stream (e.g. a guest's input pipeline). */
typedef struct malv_prefetch_observation {
  uint64_t vm_id;
  uint64_t stream_id;
  uint32_t current_depth;    /* items staged ahead now */
  uint32_t max_depth;        /* the host's cap for this stream */
  double consumption_per_s;  /* items consumed per second, recent average */
  double production_per_s;   /* items the producer can stage per second */
  int64_t consumer_stall_ns; /* time the consumer waited since the last decision */
} malv_prefetch_observation;

/* depth must be within [0, max_depth] of its observation. */
typedef struct malv_prefetch_decision {
  uint32_t depth;
} malv_prefetch_decision;

typedef struct malv_prefetch_outcome {
  malv_prefetch_observation stream; /* observation at decision time */
  uint32_t depth_used;
  int64_t consumer_stall_ns; /* stall during the period the depth applied */
} malv_prefetch_outcome;

/* ------------------------------------------------------------- cpu_sched -- */

/* The cpu_sched class (ABI version 4) decides how the host's CPUs are shared
 * among VMs. The host asks a VM's policy two kinds of question, never mixed
 * in one decide() call (every observation of a call has the same `kind`):
 *
 *  MALV_CPU_SCHED_SHARE    once per interval (and at once on events such as
 *                          a latency request arriving): one observation per
 *                          VM; the decision is the VM's CPU weight and a
 *                          placement hint.
 *  MALV_CPU_SCHED_MIGRATE  when the threads the host places itself are
 *                          imbalanced across cores: one observation per
 *                          candidate thread on the busiest core; the
 *                          decision is whether to move it to the idlest one
 *                          (what Linux's can_migrate_task() answers).
 *
 * A policy with nothing to say about migrations answers
 * MALV_CPU_MIGRATE_DEFAULT and the host applies the kernel's own rule. */
typedef enum malv_cpu_sched_kind {
  MALV_CPU_SCHED_SHARE = 1,
  MALV_CPU_SCHED_MIGRATE = 2
} malv_cpu_sched_kind;

/* The balance pass a migration candidate comes from (Linux's env->idle). */
typedef enum malv_cpu_idle_type {
  MALV_CPU_IDLE = 0,      /* the destination core is idle */
  MALV_CPU_NOT_IDLE = 1,  /* the destination core is busy (periodic balance) */
  MALV_CPU_NEWLY_IDLE = 2 /* the destination core just ran out of work */
} malv_cpu_idle_type;

/* One thread the host could move (kind MALV_CPU_SCHED_MIGRATE). Fields are
 * those of the kernel's balancer that the host can know for its own
 * threads; -1 marks a time that is unknown. */
typedef struct malv_cpu_migration {
  uint64_t thread_id;        /* the thread (Linux tid) */
  uint32_t src_cpu;          /* the core it is placed on */
  uint32_t dst_cpu;          /* the core it would move to */
  uint32_t src_len;          /* runnable threads on src_cpu (incl. this one) */
  uint32_t dst_len;          /* runnable threads on dst_cpu */
  uint32_t idle_type;        /* malv_cpu_idle_type of dst_cpu */
  uint32_t running;          /* 1: the thread is on a CPU right now */
  uint32_t same_node;        /* 1: src_cpu and dst_cpu are on one NUMA node */
  uint32_t prefer_src;       /* 1: the thread's preferred NUMA node is src_cpu's */
  uint32_t prefer_dst;       /* 1: the thread's preferred NUMA node is dst_cpu's */
  uint32_t nr_fails;         /* balance attempts in a row that moved nothing */
  uint32_t cache_nice_tries; /* attempts allowed to fail before cache-hot
                                threads may move too */
  uint32_t reserved;         /* 0 */
  int64_t since_ran_ns;      /* time since it last started running; -1: never ran */
  int64_t imbalance;         /* load the balancer wants to move (runnable threads) */
  int64_t delta_faults;      /* NUMA faults on dst's node minus src's node */
  int64_t total_faults;      /* the thread's NUMA faults in all */
} malv_cpu_migration;

typedef struct malv_cpu_sched_observation {
  uint32_t kind;           /* malv_cpu_sched_kind */
  uint32_t priority_class; /* malv_priority_class of the VM */
  uint64_t vm_id;          /* host-assigned VM id */
  /* MALV_CPU_SCHED_SHARE (0 for MIGRATE): */
  double vm_weight;                  /* the VM's compute weight from its config, > 0 */
  int64_t interval_ns;               /* length of the period the figures cover */
  int64_t cpu_time_ns;               /* CPU time the VM's threads used in the period */
  int64_t runqueue_delay_ns;         /* time they were runnable but waited for a CPU (schedstat) */
  int64_t accel_busy_ns;             /* accelerator time spent on the VM's work in the period */
  int64_t accel_starved_ns;          /* time in the period the accelerator had none of the VM's
                                        work queued while the VM was running a job: the device
                                        waited for the guest's CPU side */
  uint32_t pending_latency_requests; /* latency requests waiting for the device now */
  uint32_t threads;                  /* threads the host counts as the VM's */
  uint32_t host_cpus;                /* CPUs the host places VMs on */
  uint32_t current_weight;           /* the weight in force, 1..10000 */
  /* MALV_CPU_SCHED_MIGRATE (zeros for SHARE): */
  malv_cpu_migration migration;
} malv_cpu_sched_observation;

/* Placement hints (MALV_CPU_SCHED_SHARE). */
typedef enum malv_cpu_placement {
  MALV_CPU_PLACE_ANY = 0,       /* any of the host's CPUs (the default); Linux balances */
  MALV_CPU_PLACE_DEDICATED = 1, /* a core of its own when the host has one to give;
                                   the other VMs keep the rest */
  MALV_CPU_PLACE_BALANCED = 2   /* the host places each of the VM's threads on one core
                                   itself and, when the cores are imbalanced, asks the
                                   policy which to move (MALV_CPU_SCHED_MIGRATE) */
} malv_cpu_placement;

/* Answers of a MIGRATE decision. */
#define MALV_CPU_MIGRATE_NO 0u
#define MALV_CPU_MIGRATE_YES 1u
#define MALV_CPU_MIGRATE_DEFAULT 2u /* the host applies the kernel's own rule */

/* Weights use cgroup v2's cpu.weight scale: 100 is the default share. */
#define MALV_CPU_WEIGHT_MIN 1u
#define MALV_CPU_WEIGHT_DEFAULT 100u
#define MALV_CPU_WEIGHT_MAX 10000u

/* SHARE: weight in [MALV_CPU_WEIGHT_MIN, MALV_CPU_WEIGHT_MAX], or 0 to keep
 * the current one; placement a malv_cpu_placement. migrate must be 0.
 * MIGRATE: migrate is one of MALV_CPU_MIGRATE_*; weight and placement 0. */
typedef struct malv_cpu_sched_decision {
  uint32_t weight;
  uint32_t placement;
  uint32_t migrate;
  uint32_t reserved; /* 0 */
} malv_cpu_sched_decision;

/* Reported one interval after a SHARE decision took effect: the
 * observation it was made on, what was applied, and how the next interval
 * went under it. (MIGRATE decisions get no outcome.) */
typedef struct malv_cpu_sched_outcome {
  malv_cpu_sched_observation vm;   /* observation at decision time */
  malv_cpu_sched_decision applied; /* the decision the host applied */
  int64_t cpu_time_ns;             /* CPU time in the interval that followed */
  int64_t runqueue_delay_ns;       /* run-queue delay in that interval */
  int64_t accel_starved_ns;        /* accelerator starvation in that interval */
} malv_cpu_sched_outcome;

/* --------------------------------------------------------- host services -- */

typedef enum malv_log_level {
  MALV_LOG_TRACE = 0,
  MALV_LOG_DEBUG = 1,
  MALV_LOG_INFO = 2,
  MALV_LOG_WARN = 3,
  MALV_LOG_ERROR = 4
} malv_log_level;

typedef uint32_t malv_feature_schema; /* 0 is never a valid schema */
typedef uint64_t malv_model;          /* 0 is never a valid model */

/* Where model_open found a model (ABI version 5). */
#define MALV_MODEL_FROM_STATE 1u   /* the host's persisted copy */
#define MALV_MODEL_FROM_SHIPPED 2u /* the shipped file */

/* Longest state name of model_open/model_save, without the terminating NUL. */
#define MALV_MODEL_STATE_NAME_MAX 64u
/* Most rows and steps one model_train call takes. */
#define MALV_MODEL_TRAIN_MAX_ROWS 4096u
#define MALV_MODEL_TRAIN_MAX_STEPS 64u
/* Longest input row enqueue_inputs may write (ABI 6). */
#define MALV_ENQUEUE_INPUTS_MAX 256u

typedef struct malv_host_services malv_host_services;

/* What the host offers a module. Every function takes the table itself as
 * its first argument. All functions are thread-safe. Strings passed in are
 * copied; nothing a module passes is kept after the call returns. */
struct malv_host_services {
  uint32_t abi_version; /* MALV_MLAAS_ABI_VERSION of the host */
  uint32_t struct_size; /* sizeof(malv_host_services) of the host */

  /* Logs one line under the module's component name. level: malv_log_level. */
  void (*log)(const malv_host_services* self, int level, const char* message);
  /* Monotonic nanoseconds, the clock every *_ns field uses. */
  int64_t (*now_ns)(const malv_host_services* self);

  /* Feature registry. A schema is a named list of `count` feature names with
   * a window of the last `window` vectors kept per VM. Declaring a schema
   * that exists with the same names returns the existing id; with other
   * names it fails with MALV_MLAAS_ERR_INVALID. */
  int (*feature_declare)(const malv_host_services* self, const char* schema_name,
                         const char* const* feature_names, size_t count, size_t window,
                         malv_feature_schema* out_schema);
  /* Looks a schema up by name (one declared by the host or another module). */
  int (*feature_find)(const malv_host_services* self, const char* schema_name,
                      malv_feature_schema* out_schema, size_t* out_count);
  /* Appends one vector of exactly `count` values to the VM's window. */
  int (*feature_push)(const malv_host_services* self, malv_feature_schema schema, uint64_t vm_id,
                      const float* values, size_t count);
  /* Copies up to max_rows of the VM's most recent vectors, oldest first, as
   * rows of `count` floats into out; *out_rows gets the number copied. */
  int (*feature_read)(const malv_host_services* self, malv_feature_schema schema, uint64_t vm_id,
                      float* out, size_t max_rows, size_t* out_rows);

  /* Inference service. Loads an MLP from a .safetensors file (format in
   * docs/mlaas-abi.md); the host picks CPU or accelerator per call by batch
   * size. in is batch rows of in_dim floats, out gets batch rows of out_dim. */
  int (*model_load)(const malv_host_services* self, const char* safetensors_path,
                    malv_model* out_model);
  int (*model_dims)(const malv_host_services* self, malv_model model, size_t* in_dim,
                    size_t* out_dim);
  int (*model_infer)(const malv_host_services* self, malv_model model, const float* in,
                     size_t batch, float* out);
  void (*model_release)(const malv_host_services* self, malv_model model);

  void* host_context; /* the host's; modules must not touch it */

  /* Since ABI version 5: models a module updates and keeps, per host. The
   * host does the math (the same MLP as model_infer) and the file I/O; a
   * module cannot link the host's code. model_load gives a model of its own:
   * training it changes no other caller's model. model_open (ABI 6) gives the
   * host's one model of that state name: every instance (any VM, any module)
   * that opens the name shares it, training by any of them updates it for
   * all, and each model_open is undone by one model_release (the model goes
   * with the last). Sharing lets the host batch every caller's rows into one
   * run of the model.
   *
   * A state name is 1..MALV_MODEL_STATE_NAME_MAX characters from [A-Za-z0-9._-],
   * not starting with '.'; the host keeps the model as
   * <state_dir>/models/<state_name>.safetensors. */

  /* The host's model `state_name`: the one already open under that name
   * (shipped_path is then not read), else the host's persisted model
   * `state_name` if there is one and it loads, else the shipped file (a persisted file that fails
   * to load is logged with the reason and skipped). *out_source gets MALV_MODEL_FROM_STATE or
   * MALV_MODEL_FROM_SHIPPED (out_source may be NULL). MALV_MLAAS_ERR_NOT_FOUND when neither loads.
   * Without a state directory it loads the shipped file. */
  int (*model_open)(const malv_host_services* self, const char* state_name,
                    const char* shipped_path, malv_model* out_model, uint32_t* out_source);
  /* `steps` steps of gradient descent on the mean squared error of the
   * model's outputs for `in` (batch rows of in_dim) against `targets`
   * (batch rows of out_dim), each step over the whole batch, with
   * `learning_rate`. Every value must be finite; batch in [1,
   * MALV_MODEL_TRAIN_MAX_ROWS], steps in [1, MALV_MODEL_TRAIN_MAX_STEPS],
   * learning_rate in (0, 1]. *out_loss (may be NULL) gets the loss before
   * the first step. A step that would make a weight non-finite is undone
   * and the call fails with MALV_MLAAS_ERR_DIVERGED. Inference goes on
   * meanwhile, with the weights before or after the call. Not during
   * decide(): training has no place within a decision's budget. */
  int (*model_train)(const malv_host_services* self, malv_model model, const float* in,
                     const float* targets, size_t batch, float learning_rate, uint32_t steps,
                     float* out_loss);
  /* Writes the model's current weights to the host's state directory as
   * `state_name`, atomically (a crash leaves the old file or the new one).
   * MALV_MLAAS_ERR_NO_STATE without a state directory, MALV_MLAAS_ERR_IO
   * when writing fails. */
  int (*model_save)(const malv_host_services* self, malv_model model, const char* state_name);
};

/* ---------------------------------------------------------------- module -- */

/* One policy. create, destroy and decide are required; feedback and
 * enqueue_inputs may be NULL. decide gets n >= 1 observations of the
 * policy's class and must write n decisions; it returns MALV_MLAAS_OK or an
 * error (the host then uses the baseline). The host never calls one
 * instance's create, destroy, decide and feedback concurrently.
 *
 * enqueue_inputs (ABI 6, gpu_sched only; a policy of another class with it
 * is refused at load): called once for every item queued on the VM's
 * streams, with the item's observation as the host knows it then
 * (waited_ns 0, model_output NaN). It writes the model to run for the item
 * (one the instance opened or loaded) into *out_model and its input row, of
 * exactly the model's input dimension (at most row_capacity floats), into
 * row, and returns MALV_MLAAS_OK; any other return, model 0 or a row that
 * is not finite means "nothing for this item". The host runs the model
 * asynchronously, batched with every other caller's rows of that model, and
 * the decision for that item sees the first output in model_output. It may
 * run concurrently with the instance's other functions (on the thread that
 * queues the work), so it must only read what create() set up; it must be
 * quick (it runs for every queued item). */
typedef struct malv_policy {
  uint32_t policy_class;   /* malv_policy_class */
  const char* name;        /* unique within the module, e.g. "fair-share" */
  const char* description; /* one line, may be NULL */
  int (*create)(const malv_host_services* services, const char* vm_name, void** state);
  void (*destroy)(void* state);
  int (*decide)(void* state, const void* observations, size_t n, void* decisions);
  void (*feedback)(void* state, const void* outcomes, size_t n);
  /* ABI 6 (see above); NULL: none. */
  int (*enqueue_inputs)(void* state, const void* observation, malv_model* out_model, float* row,
                        size_t row_capacity);
} malv_policy;

typedef struct malv_mlaas_module {
  uint32_t abi_version;  /* MALV_MLAAS_ABI_VERSION; always the first field */
  uint32_t policy_count; /* entries in policies, >= 1 */
  const char* name;      /* unique among loaded modules, e.g. "malv_sched_basic" */
  const char* version;   /* the module's own version, e.g. "1.2.0" */
  const malv_policy* policies;
} malv_mlaas_module;

typedef const malv_mlaas_module* (*malv_mlaas_module_get_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* MALV_MLAAS_H_ */
