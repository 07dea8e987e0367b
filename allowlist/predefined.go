package allowlist

import (
	"slices"
	"strings"
)

// Which variable names belong to GitLab, to the runner and to writ.
//
// A job payload carries GitLab's predefined variables next to the
// project's, group's and instance's own. writ drops the predefined ones (it
// derives what a job sees from verified data instead) and refuses every
// other variable its entry does not name. A user variable whose name
// happens to start with CI_ or GITLAB_ (CI_ASG_TARGET) is such an other
// variable: it is refused unless named, never dropped, because a script
// that filters on it would act on everything when it is silently empty.
//
// So the predefined names are listed exactly, not by prefix. A GitLab newer
// than this list may send a predefined variable writ does not know; writ
// then refuses the job and says so (fail closed, with the name), and the
// fix is a writ release that lists it.

// gitlabPredefined are the variables GitLab and GitLab Runner define, from
// GitLab's "Predefined CI/CD variables reference" (including merge request,
// external pull request and retired names GitLab still sends on older
// instances) and the runner's own.
var gitlabPredefined = func() map[string]bool {
	m := map[string]bool{}
	for _, group := range []string{
		// Outside the CI_ and GITLAB_ prefixes.
		"CI CHAT_CHANNEL CHAT_INPUT CHAT_USER_ID TRIGGER_PAYLOAD",
		"GITLAB_CI GITLAB_FEATURES GITLAB_USER_EMAIL GITLAB_USER_ID GITLAB_USER_LOGIN GITLAB_USER_NAME",
		"CI_API_V4_URL CI_API_GRAPHQL_URL CI_BUILDS_DIR CI_CONCURRENT_ID CI_CONCURRENT_PROJECT_ID CI_CONFIG_PATH",
		"CI_COMMIT_AUTHOR CI_COMMIT_BEFORE_SHA CI_COMMIT_BRANCH CI_COMMIT_DESCRIPTION CI_COMMIT_MESSAGE",
		"CI_COMMIT_REF_NAME CI_COMMIT_REF_PROTECTED CI_COMMIT_REF_SLUG CI_COMMIT_SHA CI_COMMIT_SHORT_SHA",
		"CI_COMMIT_TAG CI_COMMIT_TAG_MESSAGE CI_COMMIT_TIMESTAMP CI_COMMIT_TITLE",
		"CI_DEBUG_TRACE CI_DEBUG_SERVICES CI_DEFAULT_BRANCH",
		"CI_DEPENDENCY_PROXY_DIRECT_GROUP_IMAGE_PREFIX CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX",
		"CI_DEPENDENCY_PROXY_PASSWORD CI_DEPENDENCY_PROXY_SERVER CI_DEPENDENCY_PROXY_USER",
		"CI_DEPLOY_FREEZE CI_DEPLOY_PASSWORD CI_DEPLOY_USER CI_DISPOSABLE_ENVIRONMENT CI_SHARED_ENVIRONMENT",
		"CI_ENVIRONMENT_NAME CI_ENVIRONMENT_SLUG CI_ENVIRONMENT_URL CI_ENVIRONMENT_ACTION CI_ENVIRONMENT_TIER",
		"CI_GITLAB_FIPS_MODE CI_HAS_OPEN_REQUIREMENTS CI_KUBERNETES_ACTIVE",
		"CI_JOB_ID CI_JOB_IMAGE CI_JOB_MANUAL CI_JOB_NAME CI_JOB_NAME_SLUG CI_JOB_GROUP_NAME CI_JOB_STAGE",
		"CI_JOB_STATUS CI_JOB_TIMEOUT CI_JOB_TOKEN CI_JOB_URL CI_JOB_STARTED_AT CI_JOB_SERVICES",
		"CI_JOB_JWT CI_JOB_JWT_V1 CI_JOB_JWT_V2",
		"CI_NODE_INDEX CI_NODE_TOTAL CI_OPEN_MERGE_REQUESTS CI_PAGES_DOMAIN CI_PAGES_HOSTNAME CI_PAGES_URL",
		"CI_PIPELINE_ID CI_PIPELINE_IID CI_PIPELINE_SOURCE CI_PIPELINE_TRIGGERED CI_PIPELINE_URL",
		"CI_PIPELINE_CREATED_AT CI_PIPELINE_NAME CI_PIPELINE_SCHEDULE_DESCRIPTION",
		"CI_PROJECT_DIR CI_PROJECT_ID CI_PROJECT_NAME CI_PROJECT_NAMESPACE CI_PROJECT_NAMESPACE_ID",
		"CI_PROJECT_PATH_SLUG CI_PROJECT_PATH CI_PROJECT_REPOSITORY_LANGUAGES CI_PROJECT_ROOT_NAMESPACE",
		"CI_PROJECT_TITLE CI_PROJECT_DESCRIPTION CI_PROJECT_URL CI_PROJECT_VISIBILITY CI_PROJECT_CLASSIFICATION_LABEL",
		"CI_PROJECT_TOPICS",
		"CI_REGISTRY CI_REGISTRY_IMAGE CI_REGISTRY_PASSWORD CI_REGISTRY_USER CI_RELEASE_DESCRIPTION CI_REPOSITORY_URL",
		"CI_RUNNER_DESCRIPTION CI_RUNNER_EXECUTABLE_ARCH CI_RUNNER_ID CI_RUNNER_REVISION CI_RUNNER_SHORT_TOKEN",
		"CI_RUNNER_TAGS CI_RUNNER_VERSION CI_SERVER CI_SERVER_FQDN CI_SERVER_HOST CI_SERVER_NAME CI_SERVER_PORT",
		"CI_SERVER_PROTOCOL CI_SERVER_SHELL_SSH_HOST CI_SERVER_SHELL_SSH_PORT CI_SERVER_REVISION",
		"CI_SERVER_TLS_CA_FILE CI_SERVER_TLS_CERT_FILE CI_SERVER_TLS_KEY_FILE CI_SERVER_URL",
		"CI_SERVER_VERSION CI_SERVER_VERSION_MAJOR CI_SERVER_VERSION_MINOR CI_SERVER_VERSION_PATCH",
		"CI_TEMPLATE_REGISTRY_HOST CI_TRIGGER_SHORT_TOKEN CI_BUILD_NETWORK_NAME",
		// Merge request and external pull request pipelines.
		"CI_MERGE_REQUEST_APPROVED CI_MERGE_REQUEST_ASSIGNEES CI_MERGE_REQUEST_DIFF_BASE_SHA CI_MERGE_REQUEST_DIFF_ID",
		"CI_MERGE_REQUEST_EVENT_TYPE CI_MERGE_REQUEST_DESCRIPTION CI_MERGE_REQUEST_DESCRIPTION_IS_TRUNCATED",
		"CI_MERGE_REQUEST_DRAFT CI_MERGE_REQUEST_ID CI_MERGE_REQUEST_IID CI_MERGE_REQUEST_LABELS CI_MERGE_REQUEST_MILESTONE",
		"CI_MERGE_REQUEST_PROJECT_ID CI_MERGE_REQUEST_PROJECT_PATH CI_MERGE_REQUEST_PROJECT_URL CI_MERGE_REQUEST_REF_PATH",
		"CI_MERGE_REQUEST_SOURCE_BRANCH_NAME CI_MERGE_REQUEST_SOURCE_BRANCH_PROTECTED CI_MERGE_REQUEST_SOURCE_BRANCH_SHA",
		"CI_MERGE_REQUEST_SOURCE_PROJECT_ID CI_MERGE_REQUEST_SOURCE_PROJECT_PATH CI_MERGE_REQUEST_SOURCE_PROJECT_URL",
		"CI_MERGE_REQUEST_SQUASH_ON_MERGE CI_MERGE_REQUEST_TARGET_BRANCH_NAME CI_MERGE_REQUEST_TARGET_BRANCH_PROTECTED",
		"CI_MERGE_REQUEST_TARGET_BRANCH_SHA CI_MERGE_REQUEST_TITLE",
		"CI_EXTERNAL_PULL_REQUEST_IID CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY CI_EXTERNAL_PULL_REQUEST_TARGET_REPOSITORY",
		"CI_EXTERNAL_PULL_REQUEST_SOURCE_BRANCH_NAME CI_EXTERNAL_PULL_REQUEST_SOURCE_BRANCH_SHA",
		"CI_EXTERNAL_PULL_REQUEST_TARGET_BRANCH_NAME CI_EXTERNAL_PULL_REQUEST_TARGET_BRANCH_SHA",
		// Retired names (CI_BUILD_* before GitLab 9.0).
		"CI_BUILD_ID CI_BUILD_REF CI_BUILD_BEFORE_SHA CI_BUILD_REF_NAME CI_BUILD_REF_SLUG CI_BUILD_TAG",
		"CI_BUILD_NAME CI_BUILD_STAGE CI_BUILD_REPO CI_BUILD_TRIGGERED CI_BUILD_MANUAL CI_BUILD_TOKEN",
	} {
		for _, n := range strings.Fields(group) {
			m[n] = true
		}
	}
	return m
}()

// Predefined reports whether GitLab or GitLab Runner defines a variable of
// this name. A payload's predefined variables are GitLab's metadata: writ
// never passes them to a job, and derives its own (see ProvidedNames).
func Predefined(name string) bool { return gitlabPredefined[name] }

// provided are the variables writ sets in every job from verified data, the
// signed entry or the environment's configuration, each with where its
// value comes from (docs/allowlist.md lists them; a test keeps the two
// equal).
var provided = map[string]string{
	"CI":                        "always `true`",
	"GITLAB_CI":                 "always `true`",
	"CI_SERVER":                 "always `yes`",
	"CI_JOB_ID":                 "the job id the runner received (decimal digits only; it names the job and grants nothing)",
	"CI_JOB_NAME":               "the entry's `match.job`, which GitLab's job name equals byte for byte",
	"CI_JOB_NAME_SLUG":          "`CI_JOB_NAME` slugged as GitLab does (lower case, `[^a-z0-9]` to `-`, 63 bytes, no `-` at either end)",
	"CI_JOB_STATUS":             "`running` in the script; in after_script, how writ saw the script end: `success`, `failed`, `canceled` or `timedout` (as GitLab Runner sets it)",
	"CI_JOB_TIMEOUT":            "the entry's `timeout` (or the environment's `job.default_timeout`), in seconds",
	"CI_JOB_URL":                "`job.server_url` of writ's config, the entry's project and the job id: `<server_url>/<project>/-/jobs/<id>`; unset without `job.server_url`",
	"CI_JOB_IMAGE":              "the entry's image, expanded from pinned values; unset when the entry has none",
	"CI_PROJECT_PATH":           "the entry's `match.project`",
	"CI_PROJECT_NAME":           "the last part of the entry's `match.project`",
	"CI_PROJECT_NAMESPACE":      "the entry's `match.project` without its last part",
	"CI_PROJECT_ROOT_NAMESPACE": "the first part of the entry's `match.project`",
	"CI_PROJECT_PATH_SLUG":      "`CI_PROJECT_PATH` slugged as GitLab does",
	"CI_PROJECT_URL":            "`<server_url>/<project>` from writ's config and the entry; unset without `job.server_url`",
	"CI_PROJECT_DIR":            "the job's build directory (writ's `paths.builds`/<id>, or /builds/<id> inside an image)",
	"CI_BUILDS_DIR":             "the directory holding `CI_PROJECT_DIR`",
	"CI_SERVER_URL":             "`job.server_url` of writ's config; unset without it",
	"CI_SERVER_HOST":            "the host of `job.server_url`",
	"CI_SERVER_PORT":            "the port of `job.server_url` (443 or 80 when it names none)",
	"CI_SERVER_PROTOCOL":        "the scheme of `job.server_url`",
	"CI_API_V4_URL":             "`<server_url>/api/v4`",
	"CI_COMMIT_SHA":             "the verified commit",
	"CI_COMMIT_SHORT_SHA":       "the first 8 characters of the verified commit",
	"CI_COMMIT_REF_NAME":        "the verified ref's branch or tag name",
	"CI_COMMIT_REF_SLUG":        "`CI_COMMIT_REF_NAME` slugged as GitLab does",
	"CI_COMMIT_BRANCH":          "the verified ref's name when it is a branch (refs/heads/…); unset for a tag",
	"CI_COMMIT_TAG":             "the verified ref's name when it is a tag (refs/tags/…); unset for a branch",
	"CI_ENVIRONMENT_NAME":       "writ's environment (`environment` of writ's config), not GitLab's `environment:`",
	"CI_ENVIRONMENT_SLUG":       "`CI_ENVIRONMENT_NAME` slugged as GitLab slugs environment names (24 bytes; a hash suffix when the name changed)",
}

// ProvidedNames lists, sorted, the variables writ sets in every job. A
// reference to one of them expands to writ's value, never GitLab's.
func ProvidedNames() []string {
	names := make([]string, 0, len(provided))
	for n := range provided {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ProvidedSource says where writ takes a provided variable's value from,
// or "" when writ does not set name.
func ProvidedSource(name string) string { return provided[name] }
