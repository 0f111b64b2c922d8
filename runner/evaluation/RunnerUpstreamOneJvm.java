// Upstream's Java check (SimCoPilot helper_functions/eval_code.py: `javac -cp CP FILE`, then the
// JUnit console launcher on the tester) in one JVM: javac runs in-process through the
// javax.tools API with upstream's arguments exactly (no -d, no -encoding, no -nowarn: the class
// files land beside the source, as upstream's do), then the console launcher runs as
// RunnerCompileAndTest runs it. What javac writes is kept in memory and printed (its stderr to stderr,
// its stdout to stdout) only when it fails, where upstream's harness reads it ("Error: Compilation error: <javac's stderr>");
// a successful compile's notes are dropped, as upstream's are. Before JUnit loads the tester, every
// class but this one's and JUnit's is confined (RunnerTesterPolicy), and the record file says what
// happened, as RunnerCompileAndTest's does: "compile_error RC" with javac's exit status, or
// "tested RC <JUnit's counts>". This is ours, an opt-in beside
// upstream's two JVMs (runner/evaluation/upstream_runs.py, SandboxedExecution).
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.platform.console.ConsoleLauncher;
import org.junit.platform.console.ConsoleLauncherExecutionResult;
import org.junit.platform.launcher.listeners.TestExecutionSummary;

public class RunnerUpstreamOneJvm {
    public static void main(String[] args) throws Exception {
        // args: class path, source file, tester class, key file, record file, the class path entries
        // that keep every permission (this class's folder, the JUnit jars)
        Path keyFile = Paths.get(args[3]);
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(Files.readAllBytes(keyFile), "HmacSHA256"));
        Files.delete(keyFile);
        Path record = Paths.get(args[4]);
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int compiled = javac.run(null, out, err, "-cp", args[0], args[1]);
        if (compiled != 0) {
            System.out.write(out.toByteArray());
            System.err.write(err.toByteArray());
            finish(mac, record, "compile_error " + compiled + " 0 0 0 0 0", compiled);
        }
        out = null;
        err = null;
        RunnerTesterPolicy.confine(args[5]);
        ConsoleLauncherExecutionResult result = ConsoleLauncher.execute(System.out, System.err,
                "--disable-banner", "--disable-ansi-colors", "--details=summary", "--select-class", args[2]);
        int rc = result.getExitCode();
        TestExecutionSummary s = result.getTestExecutionSummary().orElse(null);
        String counts = s == null ? "0 0 0 0 0" : s.getTestsFoundCount() + " " + s.getTestsSucceededCount() + " "
                + s.getTestsFailedCount() + " " + s.getTestsAbortedCount() + " " + s.getContainersFailedCount();
        finish(mac, record, "tested " + rc + " " + counts, rc);
    }

    private static void finish(Mac mac, Path record, String body, int rc) throws Exception {
        StringBuilder hex = new StringBuilder();
        for (byte b : mac.doFinal(body.getBytes(StandardCharsets.US_ASCII))) {
            hex.append(String.format("%02x", b));
        }
        Files.write(record, (body + " " + hex + "\n").getBytes(StandardCharsets.US_ASCII));
        System.out.flush();
        System.err.flush();
        // halt, not exit: no shutdown hook runs after the record (confined code cannot register one anyway)
        Runtime.getRuntime().halt(rc);
    }
}
